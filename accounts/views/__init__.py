"""Portal views. Every member-facing page goes through ``mixins.PortalView``."""
