"""Renderers: turn a recorded Run into something a person (or a script) reads. They never touch Ray."""
