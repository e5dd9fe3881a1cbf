using System.Globalization;
using System.Reflection;

namespace Microsoft.ML.Qwen3Moe.Persistence;

/// <summary>
/// A static method as ML.NET's catalog sees it, except that calling it through reflection does not wrap what it throws
/// in <see cref="TargetInvocationException"/>: ML.NET invokes a loader with <c>MethodInfo.Invoke(null, args)</c>, so a
/// corrupt zip would otherwise reach the caller as "Exception has been thrown by the target of an invocation", with
/// the real message (naming the entry) hidden inside.
/// </summary>
internal sealed class UnwrappedMethod(MethodInfo inner) : MethodInfo
{
    /// <inheritdoc />
    public override object? Invoke(object? obj, BindingFlags invokeAttr, Binder? binder, object?[]? parameters, CultureInfo? culture) =>
        inner.Invoke(obj, invokeAttr | BindingFlags.DoNotWrapExceptions, binder, parameters, culture);

    /// <inheritdoc />
    public override ICustomAttributeProvider ReturnTypeCustomAttributes => inner.ReturnTypeCustomAttributes;

    /// <inheritdoc />
    public override Type ReturnType => inner.ReturnType;

    /// <inheritdoc />
    public override MethodAttributes Attributes => inner.Attributes;

    /// <inheritdoc />
    public override RuntimeMethodHandle MethodHandle => inner.MethodHandle;

    /// <inheritdoc />
    public override Type? DeclaringType => inner.DeclaringType;

    /// <inheritdoc />
    public override string Name => inner.Name;

    /// <inheritdoc />
    public override Type? ReflectedType => inner.ReflectedType;

    /// <inheritdoc />
    public override MethodInfo GetBaseDefinition() => inner.GetBaseDefinition();

    /// <inheritdoc />
    public override object[] GetCustomAttributes(bool inherit) => inner.GetCustomAttributes(inherit);

    /// <inheritdoc />
    public override object[] GetCustomAttributes(Type attributeType, bool inherit) => inner.GetCustomAttributes(attributeType, inherit);

    /// <inheritdoc />
    public override bool IsDefined(Type attributeType, bool inherit) => inner.IsDefined(attributeType, inherit);

    /// <inheritdoc />
    public override MethodImplAttributes GetMethodImplementationFlags() => inner.GetMethodImplementationFlags();

    /// <inheritdoc />
    public override ParameterInfo[] GetParameters() => inner.GetParameters();
}
