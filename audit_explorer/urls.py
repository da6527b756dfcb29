from django.urls import path

from audit_explorer import trail_views, views

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
    path("traffic", views.audit_traffic, name="traffic"),
    path("demo-progress", views.demo_progress, name="demo-progress"),
    # Links from before the value moved to the query string (issue 21, item 8).
    path("projects/<path:value>", views.traffic_moved, {"dimension": "project"}),
    path("users/<path:value>", views.traffic_moved, {"dimension": "user"}),
    path("trail/<slug:name>/dead-letters/", trail_views.dead_letter_list, name="dead-letters"),
    path(
        "trail/<slug:name>/dead-letters/collect",
        trail_views.dead_letter_collect,
        name="dead-letter-collect",
    ),
    path(
        "trail/<slug:name>/dead-letters/redrive",
        trail_views.dead_letter_redrive,
        name="dead-letter-redrive",
    ),
    path(
        "trail/<slug:name>/dead-letters/discard",
        trail_views.dead_letter_discard,
        name="dead-letter-discard",
    ),
    path(
        "trail/<slug:name>/dead-letters/<int:pk>",
        trail_views.dead_letter_detail,
        name="dead-letter",
    ),
    path("trail/<slug:name>/days/", trail_views.audit_day_list, name="audit-days"),
    path("trail/<slug:name>/days/<str:day>/", trail_views.audit_day_detail, name="audit-day"),
    path(
        "trail/<slug:name>/days/<str:day>/check",
        trail_views.audit_day_check,
        name="audit-day-check",
    ),
    path(
        "trail/<slug:name>/days/<str:day>/seal",
        trail_views.audit_day_seal,
        name="audit-day-seal",
    ),
    path(
        "trail/<slug:name>/days/<str:day>/redrive",
        trail_views.audit_day_redrive,
        name="audit-day-redrive",
    ),
]
