"""Helpers every service uses at its edges: outbound URL guard, keyed hashes, text checks, URL ids."""
