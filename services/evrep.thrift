/*
 * evrep demo services: Thrift contract.
 *
 * Wire-compatible with the original prototype: same struct/field ids, types,
 * service and method names. Binary protocol, unframed (buffered) transport.
 * Default ports: OrderService 9090, CustomerService 9091.
 *
 * The c_glib namespace only changes the generated C identifiers
 * (EvrepCustomer, evrep_order_service_client_...); it does not affect the wire.
 */
namespace c_glib Evrep

typedef i32 integer

struct Customer {
  1: required integer id,
  2: required string customerName,
  3: required integer creditLimit
}

struct Orders {
  1: required integer id,
  2: required integer orderAmount,
  3: required string status,
  4: required Customer customer
}

exception OperationFailedException {
  1: string message
}

service CustomerService {
  list<Customer> getCustomers() throws (1: OperationFailedException ex),
  void createCustomer(1: Customer customer) throws (1: OperationFailedException ex)
}

service OrderService {
  list<Orders> getOrdersForCustomer(1: string customerId) throws (1: OperationFailedException ex),
  void createOrder(1: Orders order) throws (1: OperationFailedException ex),
  list<Customer> getCustomers() throws (1: OperationFailedException ex)
}
