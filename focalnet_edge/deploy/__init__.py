"""Deploy an output folder into DeepStream and Triton."""
