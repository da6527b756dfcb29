"""What the inference image adds to vLLM's OpenAI server: the audit middleware and its writer."""
