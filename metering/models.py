"""metering models arrive with their issue.

The app is registered now so migrations and imports are stable.
"""
