"""Arena web UI (Reflex app in latxa_arena/) and its launcher (launch.py)."""
