"""Built-in backends and the contract every backend implements."""
