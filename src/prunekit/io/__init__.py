"""Pickle-free save / load of every end state, and ONNX export.

An artefact is a folder: ``model.safetensors`` (each tensor in its smallest exact format)
and ``manifest.json`` (format version, model reference, spec, plan, per-tensor storage,
sparse layers, library versions).
"""

from .load import load, read_tensors
from .manifest import FORMAT_VERSION, Manifest, read_manifest
from .onnx_export import OnnxCheck, check_onnx, export_onnx
from .refs import register_builder
from .save import artifact_bytes, save

__all__ = [
    "save",
    "load",
    "read_manifest",
    "read_tensors",
    "Manifest",
    "FORMAT_VERSION",
    "artifact_bytes",
    "register_builder",
    "export_onnx",
    "check_onnx",
    "OnnxCheck",
]
