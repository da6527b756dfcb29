from django.urls import path

from provisioning import views

app_name = "provisioning"
urlpatterns = [
    path("", views.environment_list, name="environments"),
    path("runs/", views.run_list, name="runs"),
]
