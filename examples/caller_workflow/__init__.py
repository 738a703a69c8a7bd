"""A caller's own durable workflow that waits for a person's decision: see README.md here."""
