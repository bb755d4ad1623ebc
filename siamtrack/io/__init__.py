"""Frame sources and the annotated video writer: the one place where OpenCV's BGR meets siamtrack's RGB.

Everything entering or leaving this package is RGB ``uint8`` ``(H, W, 3)``; the BGR <-> RGB swap
happens only here (and in the OpenCV baselines), so no other module needs to care which order a
frame is in.
"""
from .frames import (CameraSource, FrameSource, ImageFolderSource, VideoFileSource, IMAGE_EXTENSIONS,
                     open_source, quiet_opencv_logs)
from .writer import AnnotatedVideoWriter, draw_box

__all__ = ["AnnotatedVideoWriter", "CameraSource", "FrameSource", "IMAGE_EXTENSIONS",
           "ImageFolderSource", "VideoFileSource", "draw_box", "open_source",
           "quiet_opencv_logs"]
