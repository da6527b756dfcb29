from django.urls import path

from provisioning import views

app_name = "provisioning"
urlpatterns = [
    path("", views.environment_list, name="environments"),
    path("new/", views.environment_create, name="environment-create"),
    path("runs/", views.run_list, name="runs"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/events/", views.run_events, name="run-events"),
    path("runs/<int:pk>/confirm/", views.run_confirm, name="run-confirm"),
    path("runs/<int:pk>/discard/", views.run_discard, name="run-discard"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run-cancel"),
    path("runs/<int:pk>/force-cancel/", views.run_force_cancel, name="run-force-cancel"),
    path("runs/<int:pk>/retry/", views.run_retry, name="run-retry"),
    path("runs/<int:pk>/roll-back-now/", views.run_roll_back_now, name="run-roll-back-now"),
    path("releases/<int:pk>/roll-back/", views.release_roll_back, name="release-roll-back"),
    path("holds/<int:pk>/clear/", views.hold_clear, name="hold-clear"),
    path("<slug:name>/", views.environment_detail, name="environment"),
    path("<slug:name>/edit/", views.environment_edit, name="environment-edit"),
    path("<slug:name>/delete/", views.environment_delete, name="environment-delete"),
    path("<slug:name>/runs/", views.run_start, name="run-start"),
    path("<slug:name>/destroy/", views.run_destroy, name="run-destroy"),
]
