"""The synthetic part benchmark's generator (PartImageNet's layout, 6 object kinds, 20 parts).

The tiny SAM's class-agnostic pre-training lives apart, in :mod:`wps_sam.tiny_sam`.
"""
