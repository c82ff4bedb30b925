"""The console: a page in the browser at ``/ui`` for trying models and agents and, with an admin
key, for looking after the gateway. Static files shipped in the package, and a few small JSON
endpoints under ``/ui/api``; the page talks only to the gateway's own APIs."""
