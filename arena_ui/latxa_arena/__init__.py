"""The Reflex app of the Latxa arena (Ebaluatoia): pages, state and the HTTP client for the arena API."""
