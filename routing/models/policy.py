from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from providers.models import LLMModel
from routing.agents.base import agent_canonical
from routing.engine import policy_rules
from routing.engine.taxonomy import COMPLEXITY_CHOICES, TASK_TYPE_CHOICES


class RoutingPolicy(models.Model):
    """How prompts are routed: rules by task type, a tier ladder by complexity, state rules."""

    name = models.SlugField(max_length=64, unique=True)
    description = models.TextField(blank=True)
    is_default = models.BooleanField(default=False, help_text="The policy used when none is named.")
    sticky_sessions = models.BooleanField(
        default=True, help_text="A conversation keeps its model while that model stays eligible."
    )
    tier_ladder = models.JSONField(
        default=dict,
        blank=True,
        help_text='Complexity to ordered tiers, e.g. {"simple": ["small_local", "large_local"]}.',
    )
    thresholds = models.JSONField(
        default=dict, blank=True, help_text="Overrides of the agents' default thresholds."
    )
    agents = models.JSONField(
        default=list, blank=True, help_text="Dotted paths of extra agents this policy consults."
    )
    router = models.JSONField(
        default=dict,
        blank=True,
        help_text=(
            "The learned router's cost-quality knob, e.g. "
            '{"quality_target_pct": 95, "ladder": ["small_local", "standard", "premium"]} or '
            '{"threshold": 0.3}; {"mode": "heuristic"} routes by the complexity heuristic. '
            "Empty: learned, 95 % quality kept, the full tier ladder."
        ),
    )
    response_cache = models.CharField(
        max_length=16,
        choices=[
            ("deterministic", "Deterministic requests only (temperature 0)"),
            ("always", "Every request"),
            ("off", "Never"),
        ],
        default="deterministic",
        help_text="Which answers the response cache may keep and serve (docs/guards.md).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "routing policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="routingpolicy_single_default",
                violation_error_message="Only one policy can be the default.",
            )
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {
            "tier_ladder": policy_rules.tier_ladder_errors(self.tier_ladder),
            "thresholds": policy_rules.thresholds_errors(self.thresholds),
            "agents": policy_rules.agents_errors(self.agents),
            "router": policy_rules.router_errors(self.router),
        }
        if any(errors.values()):
            raise ValidationError({k: v for k, v in errors.items() if v})


class RoutingRule(models.Model):
    """Task type (and optionally complexity) to a primary model and its fallbacks.

    Its candidates are the primary, then the fallbacks, then models of its tiers (or of the
    policy's tier ladder when it names none).
    """

    policy = models.ForeignKey(RoutingPolicy, on_delete=models.CASCADE, related_name="rules")
    position = models.PositiveIntegerField(default=0)
    task_type = models.CharField(max_length=32, choices=TASK_TYPE_CHOICES)
    complexity = models.CharField(
        max_length=16, choices=COMPLEXITY_CHOICES, blank=True, help_text="Blank matches any."
    )
    primary = models.ForeignKey(
        LLMModel, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    tiers = models.JSONField(
        default=list,
        blank=True,
        help_text="Ordered tiers tried after the models; empty uses the policy's tier ladder.",
    )

    class Meta:
        ordering = ["policy", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "task_type", "complexity"], name="routingrule_unique_match"
            )
        ]

    def __str__(self) -> str:
        return f"{self.policy.name}: {self.task_type}/{self.complexity or '*'}"

    def clean(self) -> None:
        errors = policy_rules.tiers_errors(self.tiers)
        if errors:
            raise ValidationError({"tiers": errors})


class RuleFallback(models.Model):
    rule = models.ForeignKey(RoutingRule, on_delete=models.CASCADE, related_name="fallbacks")
    position = models.PositiveIntegerField(default=0)
    model = models.ForeignKey(LLMModel, on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["rule", "position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "model"], name="rulefallback_unique_model")
        ]

    def __str__(self) -> str:
        return f"{self.rule} -> {self.model_id}"


class StateRule(models.Model):
    """What a policy does when an agent reports a state, or recommends where to run (`target`),
    or both."""

    class Target(models.TextChoices):
        LOCAL = "local", "Recommends local"
        CLOUD = "cloud", "Recommends cloud"

    class Action(models.TextChoices):
        LOCAL_ONLY = "local_only", "Local models only"
        CLOUD_ONLY = "cloud_only", "Cloud models only"
        PREFER_LOCAL = "prefer_local", "Local models first"
        PREFER_CLOUD = "prefer_cloud", "Cloud models first"
        SMALLER_CLOUD_OR_LOCAL = "smaller_cloud_or_local", "Local or non-premium cloud only"
        FREE_ONLY = "free_only", "Free or local models only"
        BLOCK = "block", "Refuse the request"

    policy = models.ForeignKey(RoutingPolicy, on_delete=models.CASCADE, related_name="state_rules")
    position = models.PositiveIntegerField(default=0)
    agent = models.CharField(
        max_length=64,
        help_text="The agent's name (a seed name such as resource_monitor is read "
        "as the built-in agent it names).",
    )
    state = models.CharField(max_length=32, blank=True, help_text="Blank: any state.")
    target = models.CharField(
        max_length=16,
        blank=True,
        choices=Target.choices,
        help_text="Match the agent's recommendation too (blank: any).",
    )
    action = models.CharField(max_length=32, choices=Action.choices)

    class Meta:
        ordering = ["policy", "position", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "agent", "state", "target"], name="staterule_unique_match"
            )
        ]

    def __str__(self) -> str:
        target = f" target={self.target}" if self.target else ""
        return f"{self.policy.name}: {self.agent}={self.state or '*'}{target} -> {self.action}"

    def clean(self) -> None:
        self.agent = agent_canonical(self.agent)
        if not self.state and not self.target:
            raise ValidationError({"state": ["give a state, a target, or both"]})
        errors = policy_rules.state_errors(self.agent, self.state) if self.state else []
        if errors:
            raise ValidationError({"state": errors})
