"""Provider webhooks (Twilio, ...), mounted on the app."""
