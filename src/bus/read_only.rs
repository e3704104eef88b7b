//! `Properties.Set` of a read-only property answers
//! `org.freedesktop.DBus.Error.PropertyReadOnly`, as the D-Bus specification has it.
//!
//! zbus's `#[interface]` dispatches Set only to properties with a setter and answers
//! `UnknownProperty` for every other name, so a caller told "Unknown property 'MaxRetry'"
//! about a property it can read would look for a typo. Every property of banhound's
//! interfaces is read-only (state changes go through methods, which the bus policy guards),
//! and giving them setters that refuse would make the introspection data say `readwrite`.
//! So the interfaces are served wrapped in [`ReadOnlyProperties`], which passes everything to
//! the interface zbus generated and tells a Set that found no setter apart: a property the
//! interface can read is read-only, any other is unknown.
//!
//! zbus marks [`DispatchResult2`] as unstable across minor versions; Cargo.lock pins zbus,
//! and the D-Bus tests (tests/dbus/hostile.rs) check both answers on the real bus.

use std::collections::HashMap;
use std::fmt::Write;
use std::future::Future;
use std::pin::Pin;

use zbus::message::{Header, Message};
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{fdo, Connection, ObjectServer};

/// An interface whose properties without a setter answer Set with `PropertyReadOnly`.
pub struct ReadOnlyProperties<I>(pub I);

/// What `#[async_trait]` makes of the trait's `async fn`s: the inner interface's futures are
/// returned as they are.
type BoxedFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

impl<I: Interface> Interface for ReadOnlyProperties<I> {
    fn name() -> InterfaceName<'static> {
        I::name()
    }

    fn spawn_tasks_for_methods(&self) -> bool {
        self.0.spawn_tasks_for_methods()
    }

    fn get<'a, 'b, 'c, 'd, 'e, 'f, 'g, 'h, 't>(
        &'a self,
        property_name: &'b str,
        server: &'c ObjectServer,
        connection: &'d Connection,
        header: Option<&'e Header<'f>>,
        emitter: &'g SignalEmitter<'h>,
    ) -> BoxedFuture<'t, Option<fdo::Result<OwnedValue>>>
    where
        'a: 't,
        'b: 't,
        'c: 't,
        'd: 't,
        'e: 't,
        'f: 't,
        'g: 't,
        'h: 't,
        Self: 't,
    {
        self.0
            .get(property_name, server, connection, header, emitter)
    }

    fn get_all<'a, 'b, 'c, 'd, 'e, 'f, 'g, 't>(
        &'a self,
        server: &'b ObjectServer,
        connection: &'c Connection,
        header: Option<&'d Header<'e>>,
        emitter: &'f SignalEmitter<'g>,
    ) -> BoxedFuture<'t, fdo::Result<HashMap<String, OwnedValue>>>
    where
        'a: 't,
        'b: 't,
        'c: 't,
        'd: 't,
        'e: 't,
        'f: 't,
        'g: 't,
        Self: 't,
    {
        self.0.get_all(server, connection, header, emitter)
    }

    fn set<'call>(
        &'call self,
        property_name: &'call str,
        value: &'call Value<'_>,
        server: &'call ObjectServer,
        connection: &'call Connection,
        header: Option<&'call Header<'_>>,
        emitter: &'call SignalEmitter<'_>,
    ) -> DispatchResult2<'call> {
        match self
            .0
            .set(property_name, value, server, connection, header, emitter)
        {
            DispatchResult2::NotFound => DispatchResult2::Async(Box::pin(async move {
                let readable = self
                    .0
                    .get(property_name, server, connection, header, emitter)
                    .await
                    .is_some();
                Err(if readable {
                    fdo::Error::PropertyReadOnly(format!("property {property_name} is read-only"))
                } else {
                    fdo::Error::UnknownProperty(format!("Unknown property '{property_name}'"))
                })
            })),
            found => found,
        }
    }

    fn set_mut<'a, 'b, 'c, 'd, 'e, 'f, 'g, 'h, 'i, 'j, 't>(
        &'a mut self,
        property_name: &'b str,
        value: &'c Value<'d>,
        server: &'e ObjectServer,
        connection: &'f Connection,
        header: Option<&'g Header<'h>>,
        emitter: &'i SignalEmitter<'j>,
    ) -> BoxedFuture<'t, Option<fdo::Result<()>>>
    where
        'a: 't,
        'b: 't,
        'c: 't,
        'd: 't,
        'e: 't,
        'f: 't,
        'g: 't,
        'h: 't,
        'i: 't,
        'j: 't,
        Self: 't,
    {
        self.0
            .set_mut(property_name, value, server, connection, header, emitter)
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        self.0.call(server, connection, msg, name)
    }

    fn call_mut<'call>(
        &'call mut self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        self.0.call_mut(server, connection, msg, name)
    }

    fn introspect_to_writer(&self, writer: &mut dyn Write, level: usize) {
        self.0.introspect_to_writer(writer, level)
    }
}
