"""Starting settings from the guide's tables: by operation type, hardware, model and memory."""
