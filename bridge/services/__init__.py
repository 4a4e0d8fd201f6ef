"""The services: what the API, the webhooks and the workers ask of the bridge."""
