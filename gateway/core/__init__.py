"""The core: the application factory, the plugin manager and registry, and the request path
(middlewares, pipeline, router, exchange, metrics) that every protocol and backend shares."""
