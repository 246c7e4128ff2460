"""Tools for trained models."""
