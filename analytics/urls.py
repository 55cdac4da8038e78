from django.urls import path

from analytics import views

app_name = "analytics"
urlpatterns = [
    path("", views.reports, name="reports"),
    path("budgets/", views.budgets, name="budgets"),
    path("demo/delete", views.demo_delete, name="demo_delete"),
    path("export.csv", views.export_csv, name="export_csv"),
    path("exports/", views.export_start, name="export_start"),
    path("exports/<int:job_id>/", views.export_status, name="export_status"),
    path("exports/<int:job_id>/download", views.export_download, name="export_download"),
    path("api/summary", views.api_summary, name="api_summary"),
    path("api/timeseries", views.api_timeseries, name="api_timeseries"),
    path("api/budgets", views.api_budgets, name="api_budgets"),
    path("api/breakdown/<str:dim>", views.api_breakdown, name="api_breakdown"),
]
