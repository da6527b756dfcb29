"""The API key pages (``api_access.key_views``), under /api-keys/."""

from django.urls import path

from api_access import key_views as views

urlpatterns = [
    path("", views.environments, name="api-keys"),
    path("<slug:environment>/", views.key_list, name="api-key-list"),
    path("<slug:environment>/new", views.key_create, name="api-key-create"),
    path("<slug:environment>/keys/<str:key_id>/", views.key_detail, name="api-key-detail"),
    path("<slug:environment>/keys/<str:key_id>/created", views.key_created, name="api-key-created"),
    path("<slug:environment>/keys/<str:key_id>/enable", views.key_enable, name="api-key-enable"),
    path("<slug:environment>/keys/<str:key_id>/disable", views.key_disable, name="api-key-disable"),
    path("<slug:environment>/keys/<str:key_id>/delete", views.key_delete, name="api-key-delete"),
    path("<slug:environment>/keys/<str:key_id>/rotate", views.key_rotate, name="api-key-rotate"),
    path(
        "<slug:environment>/keys/<str:key_id>/projects", views.key_projects, name="api-key-projects"
    ),
    path(
        "<slug:environment>/rotations/<uuid:rotation_id>/finish",
        views.rotation_finish,
        name="api-key-rotation-finish",
    ),
]
