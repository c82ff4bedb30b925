"""The core: the application factory, loading, the plugin manager and registry, and the request
path (middlewares, pipeline, router, metrics) that every protocol and backend shares."""
