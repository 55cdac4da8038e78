from typing import Any

from django.apps import AppConfig
from django.db import transaction
from django.db.models.signals import post_delete, post_save


def _config_changed(**_: Any) -> None:
    from routing.config.cache import routing_config_changed

    # After commit, so no process reloads the configuration before the change is visible.
    transaction.on_commit(routing_config_changed)


def _budgets_changed(**_: Any) -> None:
    from routing.budgets import budgets_forget

    # This process forgets at once (it must see its own edit, even inside the transaction);
    # the others through the configuration version, after commit.
    budgets_forget()
    transaction.on_commit(_routing_config_changed)


def _routing_config_changed() -> None:
    from routing.config.cache import routing_config_changed

    routing_config_changed()


class RoutingConfig(AppConfig):
    name = "routing"
    verbose_name = "Routing"

    def ready(self) -> None:
        # Cache invalidation only (no domain logic): any edit of the registry, of a policy or of
        # an agent switch, from the admin, a service, config_import or the management API,
        # makes every process reload the config.
        from providers.models import LLMModel, Provider
        from routing.models import (
            AgentSwitch,
            RoutingPolicy,
            RoutingRule,
            RuleFallback,
            StateRule,
        )

        for model in (
            Provider,
            LLMModel,
            RoutingPolicy,
            RoutingRule,
            RuleFallback,
            StateRule,
            AgentSwitch,
        ):
            post_save.connect(
                _config_changed, sender=model, dispatch_uid=f"routing-{model.__name__}"
            )
            post_delete.connect(
                _config_changed, sender=model, dispatch_uid=f"routing-{model.__name__}-del"
            )
        # Admission remembers which budgets exist and their current periods (routing.budgets).
        from routing.models import Budget, BudgetPeriod

        post_save.connect(_budgets_changed, sender=Budget, dispatch_uid="routing-budget")
        post_delete.connect(_budgets_changed, sender=Budget, dispatch_uid="routing-budget-del")
        post_delete.connect(
            _budgets_changed, sender=BudgetPeriod, dispatch_uid="routing-budgetperiod-del"
        )

        # Analytics never imports routing; it reads budgets through the source registered here.
        from analytics.budgets import budget_source_register
        from routing.budgets.reader import budget_statuses_for_analytics

        budget_source_register(budget_statuses_for_analytics)
