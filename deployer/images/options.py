"""What the images stage needs to know besides the plan: one frozen model, filled from the settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import SecretStr

from deployer.images.spec import ImageMap, parse_image_map
from deployer.images.tags import parse_mirrors
from deployer.models import CopyStyle, Model

if TYPE_CHECKING:
    from deployer.images.auth import Credentials
    from deployer.settings import Settings

Builder = Literal["auto", "buildkit", "engine"]


class ImageOptions(Model):
    """The images stage's settings: where images go, how they are built, what a layer may read."""

    registry: str | None = None
    """Where built images are pushed, e.g. `ghcr.io/acme`; None: nothing is pushed or looked up."""
    push: bool = True
    dry_run: bool = False
    """Render and look up only: nothing is built, pushed or tagged."""
    image_map: ImageMap = ImageMap()
    """`--image` values: what `Image.from_ref_name(NAME)` (and the bare default) build on."""
    mirrors: tuple[tuple[str, str], ...] = ()
    """Base-image rewrites (`FROM=TO`), longest FROM first."""
    copy_style: CopyStyle = CopyStyle.loaded_modules
    """Used when the plan does not record a resolved copy style."""
    build_concurrency: int = 2
    builder: Builder = "auto"
    docker_cli: str | None = None
    insecure_registries: tuple[str, ...] = ()
    registry_username: str | None = None
    registry_password: SecretStr | None = None
    allow_outside_sources: bool = False
    """Layers may copy host files from outside root_dir (the filesystem root is refused anyway)."""
    allow_outside_hint: str = "allow_outside_sources"
    """How the user allows that (the setting's variable), for error messages."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: Any) -> ImageOptions:
        from deployer.settings import option_info

        values: dict[str, Any] = {
            "registry": settings.registry,
            "push": settings.push,
            "dry_run": settings.dry_run,
            "image_map": parse_image_map(settings.images),
            "mirrors": parse_mirrors(settings.base_image_mirrors),
            "copy_style": settings.copy_style,
            "build_concurrency": settings.build_concurrency,
            "builder": settings.image_builder,
            "docker_cli": settings.docker_cli,
            "insecure_registries": settings.insecure_registries,
            "registry_username": settings.registry_username,
            "registry_password": settings.registry_password,
            "allow_outside_sources": settings.allow_outside_sources,
            "allow_outside_hint": f"{option_info('allow_outside_sources').env[0]}=true",
        }
        return cls(**{**values, **overrides})

    @classmethod
    def from_values(cls, given: Mapping[str, Any]) -> ImageOptions:
        """Settings from flag values (by settings field name) plus the environment, as options."""
        from deployer.settings import load_settings

        return cls.from_settings(load_settings(given))

    def credentials(self) -> Credentials:
        from deployer.images.auth import Credentials

        return Credentials.explicit_for(self.registry, self.registry_username, self.registry_password)
