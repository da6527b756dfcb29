from django.urls import path

from audit_explorer import views

app_name = "audit_explorer"
urlpatterns = [
    path("", views.audit_home, name="home"),
    path("export", views.audit_export, name="export"),
    path("follow", views.audit_follow, name="follow"),
    path("saved/", views.saved_search_create, name="saved-create"),
    path("saved/<int:pk>/delete/", views.saved_search_delete, name="saved-delete"),
    path("records/<path:request_id>", views.audit_record, name="record"),
    path("projects/<path:value>", views.audit_traffic, {"dimension": "project"}, name="project"),
    path("users/<path:value>", views.audit_traffic, {"dimension": "user"}, name="user"),
]
