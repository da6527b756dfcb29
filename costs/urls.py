from django.urls import path

from costs import views

app_name = "costs"
urlpatterns = [
    path("<slug:name>/", views.environment_costs, name="environment"),
    path("<slug:name>/budgets", views.budget_set, name="budget-set"),
    path("<slug:name>/chargeback/<str:month>.csv", views.chargeback_export, name="chargeback"),
]
