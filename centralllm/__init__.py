"""Plain-Python core shared by the console, the Lambda and the serving image.

Nothing here imports Django: the Lambda zip and the inference image ship this package as is.
"""
