"""Images: spec resolution (spec.py), the layer registry (layers.py), rendering, builds on the engine,
the code layer appended in the registry, tags, push."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deployer.images.options import ImageOptions as ImageOptions
    from deployer.images.pipeline import build_images as build_images
    from deployer.images.registry import DeleteResult as DeleteResult
    from deployer.images.registry import RegistryClient as RegistryClient

__all__ = ["DeleteResult", "ImageOptions", "RegistryClient", "build_images"]


def __getattr__(name: str) -> Any:
    # Lazy: `deployer.images.spec` is imported by planning, which must not pay for docker/httpx imports.
    if name == "build_images":
        from deployer.images.pipeline import build_images

        return build_images
    if name == "ImageOptions":
        from deployer.images.options import ImageOptions

        return ImageOptions
    if name in ("RegistryClient", "DeleteResult"):
        from deployer.images import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
