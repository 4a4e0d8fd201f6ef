"""Start-up and shutdown: the composition root, the daemon, first-start material, and
operator commands."""
