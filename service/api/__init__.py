"""HTTP routes, one module per resource; `service.app` collects each module's `routes`."""
