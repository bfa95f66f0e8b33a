"""The echo RNN training engine: TensorFlow is imported here and nowhere the API reaches."""
