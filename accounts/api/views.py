"""The REST API, version 1.

Views are thin: check the key's scope (``required_scopes``, enforced by ``HasApiKey``),
parse input with the view's ``InputSerializer``, call a service or selector, and answer with
its ``OutputSerializer``. Objects are looked up through ``accounts.tenancy`` so another
tenant's object is a 404.
"""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from accounts import selectors, services
from accounts.models import Contact, Customer
from accounts.tenancy import get_scoped_or_404

from .schema import responses
from .serializers import (
    ApiKeyOutputSerializer,
    ContactCreateInputSerializer,
    ContactInputSerializer,
    ContactOutputSerializer,
    CustomerInputSerializer,
    CustomerOutputSerializer,
)


class BaseApi(APIView):
    """Base of every v1 endpoint: lists page with the project's cursor pagination.

    Each endpoint declares its own ``required_scopes`` ({METHOD: scope}, read by
    ``HasApiKey``); a test checks that every method of every endpoint names one.
    """

    pagination_class = api_settings.DEFAULT_PAGINATION_CLASS

    def paginated_response(self, queryset, serializer_class) -> Response:
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)


# --- Customers --------------------------------------------------------------------------


class CustomerListApi(BaseApi):
    required_scopes = {"GET": "customers:read", "POST": "customers:write"}
    InputSerializer = CustomerInputSerializer
    OutputSerializer = CustomerOutputSerializer

    @extend_schema(
        summary="List customers",
        description="Operator keys see every customer; a customer key sees its own. "
        "Needs `customers:read`.",
        responses=responses({200: OutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        return self.paginated_response(
            selectors.customer_list(principal=request.auth), self.OutputSerializer
        )

    @extend_schema(
        summary="Create a customer",
        description="Needs `customers:write` (operator keys only). "
        "An `external_id` already in use answers 409 `external_id_conflict`.",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_create(actor=request.auth, **serializer.validated_data)
        return Response(self.OutputSerializer(customer).data, status=status.HTTP_201_CREATED)


class CustomerDetailApi(BaseApi):
    required_scopes = {"GET": "customers:read", "PATCH": "customers:write"}
    InputSerializer = CustomerInputSerializer
    OutputSerializer = CustomerOutputSerializer

    def get_customer(self, external_id: str) -> Customer:
        return get_scoped_or_404(Customer.objects.all(), self.request.auth, external_id=external_id)

    @extend_schema(
        summary="Get a customer",
        description="Needs `customers:read`.",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request, external_id: str):
        return Response(self.OutputSerializer(self.get_customer(external_id)).data)

    @extend_schema(
        summary="Change a customer",
        description="Send only the fields to change. Needs `customers:write` (operator keys only).",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 404, 409, 415),
    )
    def patch(self, request, external_id: str):
        # Look the customer up before reading the body: another tenant's object is a 404
        # whatever was sent.
        customer = self.get_customer(external_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        customer = services.customer_update(
            actor=request.auth, customer=customer, **serializer.validated_data
        )
        return Response(self.OutputSerializer(customer).data)


# --- Contacts ---------------------------------------------------------------------------


class ContactListApi(BaseApi):
    required_scopes = {"GET": "contacts:read", "POST": "contacts:write"}
    InputSerializer = ContactCreateInputSerializer
    OutputSerializer = ContactOutputSerializer

    class FilterSerializer(serializers.Serializer):
        customer = serializers.CharField(required=False, max_length=128)

    @extend_schema(
        summary="List contacts",
        description="Needs `contacts:read`. A customer key sees its own customer's contacts.",
        parameters=[
            OpenApiParameter(
                "customer",
                str,
                description="Only the contacts of the customer with this external_id.",
            )
        ],
        responses=responses({200: OutputSerializer(many=True)}, 400),
    )
    def get(self, request):
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        contacts = selectors.contact_list(principal=request.auth)
        if "customer" in filters.validated_data:
            contacts = contacts.filter(customer__external_id=filters.validated_data["customer"])
        return self.paginated_response(contacts, self.OutputSerializer)

    @extend_schema(
        summary="Add a contact",
        description="Needs `contacts:write`. Give at least one channel (email or a webhook URL). "
        "Operator keys must name the `customer`.",
        request=InputSerializer,
        responses=responses({201: OutputSerializer}, 400, 409, 415),
    )
    def post(self, request):
        serializer = self.InputSerializer(data=request.data, context={"principal": request.auth})
        serializer.is_valid(raise_exception=True)
        contact = services.contact_create(actor=request.auth, **serializer.validated_data)
        return Response(self.OutputSerializer(contact).data, status=status.HTTP_201_CREATED)


class ContactDetailApi(BaseApi):
    required_scopes = {
        "GET": "contacts:read",
        "PATCH": "contacts:write",
        "DELETE": "contacts:write",
    }
    InputSerializer = ContactInputSerializer
    OutputSerializer = ContactOutputSerializer

    def get_contact(self, contact_id: int) -> Contact:
        return get_scoped_or_404(
            Contact.objects.select_related("customer"), self.request.auth, pk=contact_id
        )

    @extend_schema(
        summary="Get a contact",
        description="Needs `contacts:read`.",
        responses=responses({200: OutputSerializer}, 404),
    )
    def get(self, request, contact_id: int):
        return Response(self.OutputSerializer(self.get_contact(contact_id)).data)

    @extend_schema(
        summary="Change a contact",
        description="Send only the fields to change; a blank string clears a channel. "
        "Needs `contacts:write`.",
        request=InputSerializer,
        responses=responses({200: OutputSerializer}, 400, 404, 409, 415),
    )
    def patch(self, request, contact_id: int):
        contact = self.get_contact(contact_id)
        serializer = self.InputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        contact = services.contact_update(
            actor=request.auth, contact=contact, **serializer.validated_data
        )
        return Response(self.OutputSerializer(contact).data)

    @extend_schema(
        summary="Remove a contact",
        description="Needs `contacts:write`.",
        responses=responses({204: None}, 404),
    )
    def delete(self, request, contact_id: int):
        services.contact_delete(actor=request.auth, contact=self.get_contact(contact_id))
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- The calling key --------------------------------------------------------------------


class MeApi(BaseApi):
    # Any valid key may ask what it is.
    required_scopes: dict[str, str] = {}
    OutputSerializer = ApiKeyOutputSerializer

    @extend_schema(
        summary="The calling API key",
        description="Name, prefix, kind, environment, scopes and customer of the key in use.",
        responses=responses({200: OutputSerializer}),
    )
    def get(self, request):
        return Response(self.OutputSerializer(request.auth).data)
