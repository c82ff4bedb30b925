"""Authentication: built-in authenticators and the interface plugins implement."""
