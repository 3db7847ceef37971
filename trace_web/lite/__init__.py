"""The Lite profile: embedded services and the one-command local stack."""
