"""The baseline: what each vault's network exposure should be, as YAML, turned into ``VaultPolicy``.

Format (``version: 1``)::

    version: 1
    defaults:                      # optional: the policy for vaults no entry matches
      mode: service-endpoint
      min_prefix_length: 24
    entries:                       # first matching entry (of the resource's service) wins
      - name: walkthrough-se       # reported in findings (KV010, KV013...)
        service: keyvault          # keyvault (the default) | storage: what the entry applies to
        match: {name: "kv-se-*"}   # exactly one of: name (glob, case-insensitive),
                                   #   id (a vault's, or for storage an account's, resource id),
                                   #   tag ("key=value" or "key")
        mode: service-endpoint     # private-link | service-endpoint | ip-firewall | public
        justification: "..."      # required when mode is public
        allowed_subnets: ["/subscriptions/.../virtualNetworks/v/subnets/s"]
        allowed_ip_ranges: ["203.0.113.0/24"]
        min_prefix_length: 24      # KV003: IP rules broader than this are too broad (IPv4)
        bypass: AzureServices      # KV007: AzureServices | None; unchecked when absent
        expect:                    # KV011: expected values, unchecked when absent
          default_action: Deny     #   Allow | Deny
          public_network_access: Enabled   # Enabled | Disabled | SecuredByPerimeter
        drift_severity: medium     # KV011's severity: info | low | medium | high | critical
        vantages:                  # per vantage point name; absent = the mode's default
          internet: {reach: refused, dns: public}  # reach admitted|refused, dns private|public
        private_path_identities: ["<app or object id>"]   # KV203: must arrive privately
        suppressions:
          - {rule: KV007, vault: "kv-legacy-*", reason: "...", owner: "team@contoso.example",
             expires: 2027-01-31}
      - name: data-lake            # a storage account entry: the same keys, and three of its own
        service: storage
        match: {tag: "data=lake"}
        mode: private-link
        bypass: "Logging, Metrics" # ST008: a set of None | Logging | Metrics | AzureServices
        allow_shared_key_access: false   # ST014: shared-key authorisation must be off
        subresources: [blob, dfs]  # ST011: the sub-resources in use (default: primaryEndpoints)
    suppressions: []               # global: apply to every vault and account, same shape
    logs: {refused_threshold: 10}  # KV202: refused requests per window before it fires

``defaults`` has the same keys as an entry except ``name`` and ``match``; it does not fill in keys
an entry leaves out (an entry is the whole policy for the vaults it matches). ``defaults`` apply to
Key Vaults only, so a baseline written before storage accounts were judged means what it meant: an
entry applies to its ``service`` alone (keyvault unless stated), and an entry ``service: storage``
matching ``name: "*"`` last is the storage accounts' defaults. ``allow_shared_key_access`` and
``subresources`` are storage keys (refused on a keyvault entry); ``bypass`` is validated for the
entry's service. A suppression's
``vault`` is a glob matched against the vault's name or resource id (default ``*``); ``rule`` is a
rule id of the catalog or ``*``; ``expires`` is a date (``YYYY-MM-DD``) after which it stops
suppressing and is reported.

Every mistake (YAML syntax, unknown keys, bad CIDRs, globs, ids, severities, modes, dates, a public
entry without justification) raises ``BaselineError`` with one line naming the file, the line and
the key path, e.g. ``baseline.yaml:12: entries[0].mode: unknown mode 'privatelink': use one of ...``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import difflib
import fnmatch
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.config.policy import DnsAnswer, Mode, Reach, VantageExpectation, VaultPolicy
from monitor.errors import ConfigurationError
from monitor.model import IPNetwork, Service, Severity, Suppression, VaultPosture
from monitor.model_storage import StorageAccountPosture, StorageBypass, StorageSubresource

DEFAULTS_ENTRY = "defaults"


class BaselineError(ConfigurationError):
    """A baseline that cannot be used; the message is one line naming file, line and key."""


# -- value checks (each raises ValueError with the message the user sees) ------------------------


def _chooser(accepted: Iterable[str], what: str) -> Callable[[Any], Any]:
    """A check for one of ``accepted`` (texts, or a StrEnum's members), case-insensitively, giving it
    as it is spelled there."""
    canonical = {value.lower(): value for value in accepted}
    shown = ", ".join(canonical.values())

    def check(value: Any) -> Any:
        found = canonical.get(value.strip().lower()) if isinstance(value, str) else None
        if found is None:
            raise ValueError(f"unknown {what} {value!r}: use one of {shown}")
        return found

    return check


def _choice(accepted: Iterable[str], what: str) -> Any:
    return BeforeValidator(_chooser(accepted, what))


def _network(text: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(text.strip(), strict=True)
    except ValueError as exc:
        hint = ""
        with contextlib.suppress(ValueError):
            hint = f" (did you mean {ipaddress.ip_network(text.strip(), strict=False)}?)"
        raise ValueError(f"{text!r} is not a CIDR range: {exc}{hint}") from None


def _cidr(text: str) -> str:
    return str(_network(text))


def _balanced_glob(text: str, allowed: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise ValueError(f"empty {what}")
    bad = sorted({ch for ch in text if not re.fullmatch(allowed, ch)})
    if bad:
        raise ValueError(f"{what} {text!r} contains {''.join(bad)!r}, which no vault name or id has")
    depth = 0
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if depth not in (0, 1):
            raise ValueError(f"{what} {text!r} has unbalanced brackets")
    if depth:
        raise ValueError(f"{what} {text!r} has an unclosed '['")
    return text


def _name_glob(text: str) -> str:
    # Vault names are 3-24 of [a-zA-Z0-9-]; the rest are glob characters.
    return _balanced_glob(text, r"[A-Za-z0-9\-*?\[\]!]", "vault name pattern")


def _vault_glob(text: str) -> str:
    # Suppressions match a name or a resource id (resource groups also allow . _ ( )).
    return _balanced_glob(text, r"[A-Za-z0-9\-*?\[\]!/._()]", "vault pattern")


_VAULT_ID = re.compile(
    r"/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.keyvault/vaults/[a-z0-9-]{3,24}",
    re.IGNORECASE,
)
_STORAGE_ACCOUNT_ID = re.compile(
    r"/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.storage/storageaccounts/[a-z0-9]{3,24}",
    re.IGNORECASE,
)
_SUBNET_ID = re.compile(
    r"/subscriptions/[^/]+/resourcegroups/[^/]+/providers/microsoft\.network/virtualnetworks/[^/]+/subnets/[^/]+",
    re.IGNORECASE,
)


def _resource_id(text: str) -> str:
    """A vault's or a storage account's resource id (which of them the entry's ``service`` says)."""
    text = text.strip().rstrip("/")
    if not (_VAULT_ID.fullmatch(text) or _STORAGE_ACCOUNT_ID.fullmatch(text)):
        raise ValueError(
            f"{text!r} is not a vault resource id "
            "(/subscriptions/ID/resourceGroups/RG/providers/Microsoft.KeyVault/vaults/NAME) nor a storage "
            "account's (.../providers/Microsoft.Storage/storageAccounts/NAME)"
        )
    return text


def _storage_bypass(value: Any) -> str:
    """A storage bypass set as Azure writes it ("Logging, Metrics"), from that text or a YAML list."""
    parts = value if isinstance(value, list) else str(value).split(",") if isinstance(value, str) else None
    if parts is None:
        raise ValueError(f"bypass {value!r} must be a comma-separated text or a list")
    canonical = {member.value.lower(): member for member in StorageBypass}
    members: set[StorageBypass] = set()
    for part in parts:
        found = canonical.get(str(part).strip().lower())
        if found is None:
            shown = ", ".join(member.value for member in StorageBypass)
            raise ValueError(f"unknown bypass {str(part).strip()!r}: use any of {shown}, comma-separated")
        members.add(found)
    if StorageBypass.NONE in members and len(members) > 1:
        raise ValueError("bypass None cannot be combined with Logging, Metrics or AzureServices")
    return ", ".join(member.value for member in StorageBypass if member in members)


def _subnet_id(text: str) -> str:
    text = text.strip().rstrip("/")
    if not _SUBNET_ID.fullmatch(text):
        raise ValueError(
            f"{text!r} is not a subnet resource id "
            "(/subscriptions/ID/resourceGroups/RG/providers/Microsoft.Network/virtualNetworks/VNET/subnets/NAME)"
        )
    return text.lower()  # ARM lower-cases subnet ids; compare that way


def _tag(text: str) -> str:
    key, _, _ = text.partition("=")
    if not key.strip():
        raise ValueError(f"tag {text!r} has no key: use 'key=value' or 'key'")
    return text.strip()


def _rule_id(text: str, info: ValidationInfo) -> str:
    rule = text.strip().upper()
    # The rule ids come in the validation context (``parse_baseline``'s ``known_rules``): the
    # configuration stage knows nothing of the judge's catalog.
    known_rules: AbstractSet[str] = (info.context or {})["known_rules"]
    if rule != "*" and rule not in known_rules:
        raise ValueError(f"unknown rule {text!r}: use a rule id from 'kvmon rules' or '*'")
    return rule


def _severity(text: str) -> Severity:
    return Severity.parse(text)


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text.strip()


Text = Annotated[str, AfterValidator(_not_blank)]
Cidr = Annotated[str, AfterValidator(_cidr)]
SubnetId = Annotated[str, AfterValidator(_subnet_id)]


# -- the document ---------------------------------------------------------------------------------


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class MatchSpec(_Spec):
    name: Annotated[str, AfterValidator(_name_glob)] | None = None
    id: Annotated[str, AfterValidator(_resource_id)] | None = None
    tag: Annotated[str, AfterValidator(_tag)] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> MatchSpec:
        given = [key for key in ("name", "id", "tag") if getattr(self, key) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of name, id or tag (got {', '.join(given) or 'none'})")
        return self

    def matches(self, posture: VaultPosture | StorageAccountPosture) -> bool:
        if self.name is not None:
            return fnmatch.fnmatchcase(posture.name.lower(), self.name.lower())
        if self.id is not None:
            return posture.key == self.id.lower()
        assert self.tag is not None
        key, has_value, value = self.tag.partition("=")
        tags = {k.lower(): v for k, v in posture.tags.items()}
        if key.strip().lower() not in tags:
            return False
        return not has_value or tags[key.strip().lower()] == value.strip()


class SuppressionSpec(_Spec):
    rule: Annotated[str, AfterValidator(_rule_id)]
    vault: Annotated[str, AfterValidator(_vault_glob)] = "*"
    reason: Text
    owner: Text
    expires: dt.date

    def to_suppression(self) -> Suppression:
        return Suppression(
            rule=self.rule,
            vault_pattern=self.vault,
            reason=self.reason,
            owner=self.owner,
            expires=self.expires,
        )


class VantageSpec(_Spec):
    reach: Annotated[Reach, _choice(Reach, "reach")] | None = None
    dns: Annotated[DnsAnswer, _choice(DnsAnswer, "dns answer")] | None = None


class ExpectSpec(_Spec):
    default_action: Annotated[str, _choice(("Allow", "Deny"), "default action")] | None = None
    public_network_access: (
        Annotated[str, _choice(("Enabled", "Disabled", "SecuredByPerimeter"), "public network access")] | None
    ) = None


_KEYVAULT_BYPASS = _chooser(("AzureServices", "None"), "bypass")


class PolicySpec(_Spec):
    # First, so that the keys after it are validated for the service it names.
    service: Annotated[Service, _choice(Service, "service")] = Service.KEYVAULT
    mode: Annotated[Mode, _choice(Mode, "mode")] | None = None
    justification: Text | None = None
    allowed_subnets: list[SubnetId] = Field(default_factory=list)
    allowed_ip_ranges: list[Cidr] = Field(default_factory=list)
    min_prefix_length: int = Field(default=24, ge=0, le=32, strict=True)
    bypass: str | None = None
    expect: ExpectSpec = Field(default_factory=ExpectSpec)
    drift_severity: Annotated[str, AfterValidator(_severity)] = Severity.MEDIUM
    vantages: dict[Text, VantageSpec] = Field(default_factory=dict)
    private_path_identities: list[Text] = Field(default_factory=list)
    suppressions: list[SuppressionSpec] = Field(default_factory=list)
    # Storage accounts only.
    allow_shared_key_access: StrictBool | None = None
    subresources: list[Annotated[StorageSubresource, _choice(StorageSubresource, "sub-resource")]] = Field(
        default_factory=list
    )

    @field_validator("bypass", mode="before")
    @classmethod
    def _bypass_of_the_service(cls, value: Any, info: ValidationInfo) -> Any:
        """Key Vault's bypass is AzureServices or None; a storage account's a set of None, Logging,
        Metrics and AzureServices."""
        if value is None:
            return None
        if info.data.get("service") is Service.STORAGE:
            return _storage_bypass(value)
        return _KEYVAULT_BYPASS(value)

    @field_validator("allow_shared_key_access", "subresources")
    @classmethod
    def _storage_only(cls, value: Any, info: ValidationInfo) -> Any:
        if value not in (None, []) and info.data.get("service") is not Service.STORAGE:
            raise ValueError(f"{info.field_name} applies to storage accounts only: add 'service: storage'")
        return value

    @model_validator(mode="after")
    def _public_needs_justification(self) -> PolicySpec:
        if self.mode is Mode.PUBLIC and not self.justification:
            raise ValueError("mode public needs a justification: say why this vault may be public")
        return self

    def to_policy(self, entry: str, global_suppressions: Sequence[Suppression]) -> VaultPolicy:
        return VaultPolicy(
            entry=entry,
            mode=self.mode,
            justification=self.justification,
            allowed_subnets=tuple(self.allowed_subnets),
            allowed_ip_ranges=tuple(_network(text) for text in self.allowed_ip_ranges),
            min_prefix_length=self.min_prefix_length,
            bypass=self.bypass if self.service is Service.KEYVAULT else None,
            default_action=self.expect.default_action,
            public_network_access=self.expect.public_network_access,
            drift_severity=Severity(self.drift_severity),
            vantages={
                name: VantageExpectation(reach=spec.reach, dns=spec.dns)
                for name, spec in self.vantages.items()
            },
            private_path_identities=tuple(self.private_path_identities),
            suppressions=(*(s.to_suppression() for s in self.suppressions), *global_suppressions),
            baseline_given=True,
            storage_bypass=(
                frozenset(StorageBypass(part.strip()) for part in self.bypass.split(","))
                if self.service is Service.STORAGE and self.bypass is not None
                else None
            ),
            allow_shared_key_access=self.allow_shared_key_access,
            subresources=tuple(self.subresources),
        )


class EntrySpec(PolicySpec):
    name: Text
    match: MatchSpec

    @field_validator("match")
    @classmethod
    def _id_of_the_service(cls, match: MatchSpec, info: ValidationInfo) -> MatchSpec:
        service = info.data.get("service")
        if match.id is not None and service is not None and Service.of_resource_id(match.id) is not service:
            raise ValueError(f"id {match.id!r} is not of the entry's service {service.value}")
        return match


class LogsSpec(_Spec):
    refused_threshold: int = Field(default=10, ge=1, strict=True)


class BaselineSpec(_Spec):
    version: Literal[1]
    defaults: PolicySpec | None = None
    entries: list[EntrySpec] = Field(default_factory=list)
    suppressions: list[SuppressionSpec] = Field(default_factory=list)
    logs: LogsSpec = Field(default_factory=LogsSpec)


# -- the loaded baseline --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    match: MatchSpec
    policy: VaultPolicy
    service: Service = Service.KEYVAULT


@dataclass(frozen=True)
class Baseline:
    """A loaded baseline; ``Baseline.none()`` when no file was given."""

    path: str | None = None
    entries: tuple[_Entry, ...] = ()
    defaults: VaultPolicy | None = None
    suppressions: tuple[Suppression, ...] = ()
    logs_refused_threshold: int = 10
    _no_entry: VaultPolicy = field(default_factory=VaultPolicy)

    @classmethod
    def none(cls) -> Baseline:
        """No baseline file: policies state nothing and KV013 stays quiet."""
        return cls()

    @property
    def given(self) -> bool:
        return self.path is not None

    def policy_for(self, posture: VaultPosture | StorageAccountPosture) -> VaultPolicy:
        """The first entry of the resource's service matching it, else (for a vault) ``defaults``,
        else a policy with no entry. ``defaults`` are Key Vault's: a storage account no entry matches
        has no entry (an entry ``service: storage, match: {name: "*"}`` is the accounts' defaults)."""
        service = Service.STORAGE if isinstance(posture, StorageAccountPosture) else Service.KEYVAULT
        for entry in self.entries:
            if entry.service is service and entry.match.matches(posture):
                return entry.policy
        if self.defaults is not None and service is Service.KEYVAULT:
            return self.defaults
        return self._no_entry

    @classmethod
    def from_spec(cls, spec: BaselineSpec, *, path: str) -> Baseline:
        suppressions = tuple(s.to_suppression() for s in spec.suppressions)
        return cls(
            path=path,
            entries=tuple(
                _Entry(e.match, e.to_policy(e.name, suppressions), e.service) for e in spec.entries
            ),
            defaults=spec.defaults.to_policy(DEFAULTS_ENTRY, suppressions) if spec.defaults else None,
            suppressions=suppressions,
            logs_refused_threshold=spec.logs.refused_threshold,
            _no_entry=VaultPolicy(suppressions=suppressions, baseline_given=True),
        )


def load_baseline(path: Path | str, *, known_rules: AbstractSet[str]) -> Baseline:
    """Read and validate a baseline file; ``BaselineError`` with one clear line otherwise.
    ``known_rules``: the rule ids a suppression may name (the catalog's)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM (Windows editors)
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read the baseline: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise BaselineError(f"{path}: the baseline is not UTF-8 text (byte {exc.start})") from None
    return parse_baseline(text, source=str(path), known_rules=known_rules)


def parse_baseline(text: str, *, source: str, known_rules: AbstractSet[str]) -> Baseline:
    """Validate baseline YAML ``text``; ``source`` names it in messages, ``known_rules`` are the
    rule ids a suppression may name."""
    document, lines = _compose(text, source)
    if document is None:
        raise BaselineError(f"{source}:1: the baseline is empty: it needs at least 'version: 1'")
    if not isinstance(document, dict):
        raise BaselineError(
            f"{source}:1: the baseline must be a mapping of keys (version, defaults, entries, "
            f"suppressions, logs), not {type(document).__name__}"
        )
    try:
        spec = BaselineSpec.model_validate(document, context={"known_rules": known_rules})
    except ValidationError as exc:
        raise BaselineError(_describe(exc, lines, source)) from None
    if spec.defaults is not None and spec.defaults.service is not Service.KEYVAULT:
        location: Location = ("defaults", "service")
        raise BaselineError(
            f"{source}:{_line_of(location, lines)}: {_dotted(location)}: defaults apply to Key Vaults only; "
            "give storage accounts an entry with 'service: storage' and 'match: {name: \"*\"}'"
        )
    seen: set[str] = {DEFAULTS_ENTRY}
    for index, entry in enumerate(spec.entries):
        if entry.name.lower() in seen:
            location = ("entries", index, "name")
            raise BaselineError(
                f"{source}:{_line_of(location, lines)}: {_dotted(location)}: entry name {entry.name!r} is "
                "already used (names are case-insensitive; 'defaults' is reserved)"
            )
        seen.add(entry.name.lower())
    return Baseline.from_spec(spec, path=source)


# -- YAML with line numbers -----------------------------------------------------------------------

Location = tuple[str | int, ...]


class _Loader(yaml.SafeLoader):
    """Safe YAML that leaves dates as text: pydantic then judges them (``2027-02-30`` gets a
    message with a line instead of an exception from the YAML constructor)."""


def _timestamp_as_text(loader: _Loader, node: yaml.Node) -> str:
    return str(node.value)


_Loader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_text)


def _compose(text: str, source: str) -> tuple[Any, dict[Location, int]]:
    """The document and the line (1-based) of every key and list item, by key path."""
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:  # YAML refuses control characters before parsing
        line = text.count("\n", 0, exc.position) + 1
        raise BaselineError(
            f"{source}:{line}: character U+{exc.character:04X} is not allowed in YAML"
        ) from None
    try:
        node = loader.get_single_node()
        document = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = exc.problem or exc.context or "not valid YAML"
        raise BaselineError(f"{source}:{line}: YAML syntax error: {problem}") from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise BaselineError(f"{source}: not a readable YAML document: {exc}") from None
    finally:
        loader.dispose()
    lines: dict[Location, int] = {(): 1}
    if node is not None:
        _index(node, (), lines, source, set())
    return document, lines


def _index(
    node: yaml.Node, path: Location, lines: dict[Location, int], source: str, indexed: set[int]
) -> None:
    # An alias (*name) is its anchored node again: index each node once, or a document of nested
    # aliases ("billion laughs") takes exponential time and a recursive one never ends.
    if id(node) in indexed:
        return
    indexed.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise BaselineError(f"{source}:{line}: {_dotted((*path, key))}: duplicate key {key!r}")
            seen.add(key)
            lines[(*path, key)] = line
            _index(value_node, (*path, key), lines, source, indexed)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _index(item, (*path, index), lines, source, indexed)


def _dotted(location: Location) -> str:
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


_ALL_KEYS = sorted(
    {
        name
        for model in (BaselineSpec, EntrySpec, MatchSpec, SuppressionSpec, VantageSpec, ExpectSpec, LogsSpec)
        for name in model.model_fields
    }
)


def _line_of(location: Location, lines: Mapping[Location, int]) -> int:
    """The line of the deepest part of ``location`` the YAML has (a missing key: its parent)."""
    return next(lines[location[:n]] for n in range(len(location), -1, -1) if location[:n] in lines)


def _describe(exc: ValidationError, lines: Mapping[Location, int], source: str) -> str:
    errors = exc.errors(include_url=False)
    # Report the problem that comes first in the file, as a reader goes through it.
    line, first = min(
        ((_line_of(tuple(error["loc"]), lines), error) for error in errors), key=lambda pair: pair[0]
    )
    location: Location = tuple(first["loc"])
    # pydantic marks a bad mapping key with a "[key]" step after the key itself.
    bad_key = "[key]" in location
    location = tuple(part for part in location if part != "[key]")
    kind = first["type"]
    if kind == "extra_forbidden":
        key = str(location[-1])
        close = difflib.get_close_matches(key, _ALL_KEYS, n=1)
        message = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
    elif kind == "missing":
        message = f"missing required key {location[-1]!r}"
        location = location[:-1]
    else:
        message = str(first["msg"]).removeprefix("Value error, ")
        if bad_key:
            message = f"bad key {location[-1]!r}: {message}"
            location = location[:-1]
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{source}:{line}: {_dotted(location)}: {message}{more}"
