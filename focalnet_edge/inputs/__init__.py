"""What a model is fed: image files, video files, live streams and cameras."""
