"""The Anthropic Messages protocol: the adapter (:mod:`.adapter`) and its wire formats
(:mod:`.messages`, :mod:`.response`, :mod:`.stream`)."""
