"""A framework's im-task settings, read and checked the same way by every adapter.

The keys are the core settings (:data:`~im_task.setting_values.SETTING_NAMES`),
the adapter-level keys (:data:`ADAPTER_SETTING_NAMES`: ``route``,
``register_local_target``) and each adapter's own; an unknown key is refused
with a "did you mean". The adapter then hands the core settings to
:func:`im_task.config.set_framework_settings`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from im_task.errors import ConfigurationError
from im_task.names import did_you_mean
from im_task.redaction import repr_without_secrets
from im_task.routing import normalize_taskroute
from im_task.setting_values import SETTING_NAMES, validate_setting

__all__ = ["ADAPTER_SETTING_NAMES", "AdapterSettings", "KeyCheck", "read_adapter_settings"]

#: The keys every adapter reads from its framework's settings besides the core settings.
ADAPTER_SETTING_NAMES = ("route", "register_local_target")


@dataclass(frozen=True)
class AdapterSettings:
    """A framework's im-task settings, read and checked by :func:`read_adapter_settings`.

    Attributes:
        core: The core settings, by their :func:`~im_task.configure` names (unset ones left out).
        route: The task route to set, or None to keep :func:`~im_task.get_taskroute`.
        register_local_target: Whether the local queue delivers to the application in process.
        extra: The adapter's own keys, checked, by their canonical (lower-case) names.
    """

    core: Mapping[str, Any] = field(default_factory=dict)  # holds the secret: hidden by __repr__
    route: str | None = None
    register_local_target: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return repr_without_secrets(self)


#: Checks one value of an adapter's own key: ``check(value, source)`` returns it or raises ``ConfigurationError``.
KeyCheck = Callable[[Any, str], Any]


def read_adapter_settings(
    values: Mapping[str, Any],
    *,
    source: str,
    spell: Callable[[str], str] = str,
    extra: Mapping[str, KeyCheck] | None = None,
) -> AdapterSettings:
    """Reads the im-task settings of a framework, as every adapter does.

    The keys are the core settings (:data:`~im_task.setting_values.SETTING_NAMES`), the adapter-level
    keys (:data:`ADAPTER_SETTING_NAMES`) and the adapter's ``extra`` keys, each
    spelt as the framework spells settings (``spell``: Flask's
    ``IM_TASK_SECRET``, Django's ``SECRET``, webapp2's ``secret``). ``None``
    values are left out. Every value is checked here.

    Args:
        values: The settings as written, e.g. ``settings.IM_TASK``.
        source: Where they are written, for messages, e.g. ``"settings.IM_TASK"``.
        spell: How the framework spells a canonical name.
        extra: The adapter's own keys, by canonical name, with their checks.

    Returns:
        The settings.

    Raises:
        ConfigurationError: For an unknown key (with the closest known one,
            or the right spelling when only the case is wrong), or a bad value.
    """
    checks = dict(extra or {})
    names = [*SETTING_NAMES, *ADAPTER_SETTING_NAMES, *checks]
    spelt = {spell(name): name for name in names}
    for key in values:
        if key in spelt:
            continue
        text = str(key)
        by_case = [written for written in spelt if written.lower() == text.lower()]
        if by_case:
            raise ConfigurationError(f"{source}: {text!r} must be written {by_case[0]!r}.")
        raise ConfigurationError(
            f"{source}: unknown key {text!r}{did_you_mean(text, spelt)}; known keys: {', '.join(spelt)}."
        )
    given = {spelt[key]: value for key, value in values.items() if value is not None}
    core = {name: value for name, value in given.items() if name in SETTING_NAMES}
    for name, value in core.items():
        validate_setting(name, value, f"{source}[{spell(name)!r}]")
    route = given.get("route")
    if route is not None:
        try:
            route = normalize_taskroute(route)
        except ConfigurationError as exc:
            raise ConfigurationError(f"{source}[{spell('route')!r}]: {exc}") from None
    register = given.get("register_local_target", True)
    if not isinstance(register, bool):
        raise ConfigurationError(
            f"{source}[{spell('register_local_target')!r}] must be True or False, not {register!r}."
        )
    checked = {
        name: check(given[name], f"{source}[{spell(name)!r}]") for name, check in checks.items() if name in given
    }
    return AdapterSettings(core=core, route=route, register_local_target=register, extra=checked)
