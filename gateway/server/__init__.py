"""The server process: one process serving (with reloads on SIGHUP), the supervisor of
``--workers N``, and systemd notification."""
