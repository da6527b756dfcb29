import django_rq
import pytest
from django.contrib.auth.models import Group

from console.roles import ADMIN, OPERATOR, VIEWER


@pytest.fixture
def redis_conn():
    """The real Redis of the test session, emptied before and after each test."""
    connection = django_rq.get_connection("default")
    connection.flushdb()
    yield connection
    connection.flushdb()


def make_user(django_user_model, username: str, role: str | None):
    user = django_user_model.objects.create_user(
        username=username, password=f"{username}-password-123", is_staff=role == ADMIN
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "vera", VIEWER)


@pytest.fixture
def operator(django_user_model):
    return make_user(django_user_model, "otto", OPERATOR)


@pytest.fixture
def admin_user(django_user_model):
    return make_user(django_user_model, "ada", ADMIN)
