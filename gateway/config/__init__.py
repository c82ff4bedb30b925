"""Configuration: the TOML file, ``${VAR}`` expansion and ``HOOKGATE_*`` variables (:mod:`.loader`),
the core's sections and the value types plugins use in theirs (:mod:`.types`)."""
