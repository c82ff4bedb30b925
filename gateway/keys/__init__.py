"""Virtual keys: API keys and teams kept in the database, managed at run time through the admin
API (``/admin/keys``, ``/admin/teams``) and ``hookgate keys``."""
