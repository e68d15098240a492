"""Pixel data: how an instance's frames are described, laid out in its blob, decoded and rendered."""
