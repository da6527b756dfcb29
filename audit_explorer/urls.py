from django.urls import path

from audit_explorer import views

app_name = "audit_explorer"
urlpatterns = [
    path("", views.audit_home, name="home"),
]
