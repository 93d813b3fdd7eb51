import factory
from factory.django import DjangoModelFactory

from accounts import services
from accounts.models import ApiKey, Contact, Customer, Membership, Persona, User
from accounts.roles import Role
from accounts.scopes import ALL_SCOPES, CUSTOMER_KEY_SCOPES

TEST_PASSWORD = "correct horse battery staple 42"


class CustomerFactory(DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Sequence(lambda n: f"Acme {n} Inc")
    external_id = factory.Sequence(lambda n: f"cust_{n:05d}")
    currency = "USD"
    timezone = "Europe/Berlin"
    billing_email = factory.LazyAttribute(lambda o: f"billing@{o.external_id}.example.com")


class UserFactory(DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    first_name = factory.Faker("first_name")
    last_name = factory.Faker("last_name")
    password = factory.PostGenerationMethodCall("set_password", TEST_PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class MembershipFactory(DjangoModelFactory):
    """An accepted membership (a user who can log in)."""

    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    customer = factory.SubFactory(CustomerFactory)
    role = Role.OWNER
    invited_at = factory.Faker("past_datetime", tzinfo=__import__("datetime").UTC)
    accepted_at = factory.LazyAttribute(lambda o: o.invited_at)


class ContactFactory(DjangoModelFactory):
    class Meta:
        model = Contact

    customer = factory.SubFactory(CustomerFactory)
    name = factory.Faker("name")
    persona = Persona.FINANCE
    email = factory.Sequence(lambda n: f"contact{n}@example.com")


def make_api_key(
    *,
    customer: Customer | None = None,
    scopes=None,
    environment: str = "live",
    name: str = "test key",
) -> tuple[ApiKey, str]:
    """A key through the real service: an operator key without ``customer``, else a customer key."""
    kind = ApiKey.Kind.CUSTOMER if customer is not None else ApiKey.Kind.OPERATOR
    if scopes is None:
        scopes = CUSTOMER_KEY_SCOPES if customer is not None else ALL_SCOPES
    return services.api_key_create(
        actor=None,
        name=name,
        kind=kind,
        scopes=list(scopes),
        customer=customer,
        environment=environment,
    )
