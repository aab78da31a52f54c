"""The arena API's routers, one per resource; :func:`latxa.serving.arena.app.create_arena_app` mounts them."""
