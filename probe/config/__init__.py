"""Typed, frozen settings built once: flag > file > environment > default, with provenance.

``keys`` holds every setting's key (flag, variable, parser, default, help); ``sections`` the
typed sections the rest of the probe reads; ``settings`` the loader. Nothing outside this
package reads a setting by its dotted name.
"""

from probe.config.consent import (
    CONSENT_TEXT,
    CONSENT_VERSION,
    ConsentRequired,
    ConsentState,
    consent_path,
    current_state,
    require_consent,
)
from probe.config.keys import (
    ALL_KEYS,
    BY_DOTTED,
    COLLECTOR_KEYS,
    DAEMON_DEFAULTS,
    DAEMON_KEYS,
    HELPER_KEYS,
    KEYS,
    Key,
    stored_value,
)
from probe.config.sections import (
    DEFAULT_DOH,
    DEFAULT_GROUPS,
    CollectorSettings,
    ControlSettings,
    DaemonGroup,
    DaemonSettings,
    HelperServeSettings,
    LimitSettings,
    NetworkSettings,
    StorageSettings,
    ThroughputSettings,
    VantageSettings,
)
from probe.config.settings import (
    ConfigError,
    DaemonConfig,
    HelperConfig,
    Provenance,
    Settings,
    default_config_path,
    load_collector_settings,
    load_daemon_settings,
    load_helper_settings,
    load_settings,
)
from probe.config.values import TOKEN_MAX, parse_retention, read_token_file

__all__ = [
    "ALL_KEYS",
    "BY_DOTTED",
    "COLLECTOR_KEYS",
    "CONSENT_TEXT",
    "CONSENT_VERSION",
    "DAEMON_DEFAULTS",
    "DAEMON_KEYS",
    "DEFAULT_DOH",
    "DEFAULT_GROUPS",
    "HELPER_KEYS",
    "KEYS",
    "TOKEN_MAX",
    "CollectorSettings",
    "ConfigError",
    "ConsentRequired",
    "ConsentState",
    "ControlSettings",
    "DaemonConfig",
    "DaemonGroup",
    "DaemonSettings",
    "HelperConfig",
    "HelperServeSettings",
    "Key",
    "LimitSettings",
    "NetworkSettings",
    "Provenance",
    "Settings",
    "StorageSettings",
    "ThroughputSettings",
    "VantageSettings",
    "consent_path",
    "current_state",
    "default_config_path",
    "load_collector_settings",
    "load_daemon_settings",
    "load_helper_settings",
    "load_settings",
    "parse_retention",
    "read_token_file",
    "require_consent",
    "stored_value",
]
