"""Built-in components, each registered through the same hooks a third-party plugin uses."""
