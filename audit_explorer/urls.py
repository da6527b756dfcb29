from django.urls import path

from audit_explorer import views

app_name = "audit_explorer"
urlpatterns = [
    path("", views.audit_home, name="home"),
    path("export", views.audit_export, name="export"),
    path("follow", views.audit_follow, name="follow"),
    path("exports/", views.export_list, name="exports"),
    path("exports/new", views.export_create, name="export-create"),
    path("exports/<int:pk>/download", views.export_download, name="export-download"),
    path("exports/<int:pk>/cancel", views.export_cancel, name="export-cancel"),
    path("saved/", views.saved_search_create, name="saved-create"),
    path("saved/<int:pk>/delete/", views.saved_search_delete, name="saved-delete"),
    path("records/<path:request_id>", views.audit_record, name="record"),
    path("projects/<path:value>", views.audit_traffic, {"dimension": "project"}, name="project"),
    path("users/<path:value>", views.audit_traffic, {"dimension": "user"}, name="user"),
]
