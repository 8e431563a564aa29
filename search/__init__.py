"""The search engine and its command line."""
