"""The URL shortener (the course's TinyURL): generated base-58 keys, custom aliases, expiry, per-key quotas, clicks."""
